"""Language-model metrics under the OpenTelemetry GenAI names, in Prometheus form.

    genai = GenAIMetrics()
    series = genai.series("smollm2", 1)
    series.first_token(0.041); series.finished(prompt=128, output=32, seconds=0.9)
    genai.render(gauges)          # appended to GET /metrics

``gen_ai.server.time_to_first_token`` becomes ``gen_ai_server_time_to_first_token_seconds``
and so on; labels carry ``gen_ai_request_model`` and the registry version. Recorded on the
event loop only, like every other metric of the server.
"""

from __future__ import annotations

from collections.abc import Iterable

from modelport.monitoring.metrics import LATENCY_BUCKETS, Histogram, _labels

TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
    10.0,
)  # fmt: skip
TPOT_BUCKETS = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1,
    0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
)  # fmt: skip
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536)


class GenAISeries:
    __slots__ = (
        "labels",
        "ttft",
        "tpot",
        "duration",
        "tokens_in",
        "tokens_out",
        "input_total",
        "output_total",
        "requests",
    )

    def __init__(self, labels: str) -> None:
        self.labels = labels
        self.ttft = Histogram(TTFT_BUCKETS)
        self.tpot = Histogram(TPOT_BUCKETS)
        self.duration = Histogram(LATENCY_BUCKETS)
        self.tokens_in = Histogram(TOKEN_BUCKETS)
        self.tokens_out = Histogram(TOKEN_BUCKETS)
        self.input_total = self.output_total = self.requests = 0

    def first_token(self, seconds: float) -> None:
        self.ttft.observe(seconds)

    def finished(self, prompt: int, output: int, seconds: float, decode_seconds: float) -> None:
        self.requests += 1
        self.input_total += prompt
        self.output_total += output
        self.tokens_in.observe(prompt)
        self.tokens_out.observe(output)
        self.duration.observe(seconds)
        if output > 1:
            self.tpot.observe(decode_seconds / (output - 1))


class GenAIMetrics:
    def __init__(self) -> None:
        self._series: dict[tuple[str, int, str], GenAISeries] = {}

    def series(self, model: str, version: int, operation: str = "chat") -> GenAISeries:
        key = (model, version, operation)
        found = self._series.get(key)
        if found is None:
            labels = _labels(
                gen_ai_request_model=model, version=str(version), gen_ai_operation_name=operation
            )
            found = self._series[key] = GenAISeries(labels)
        return found

    def render(self, gauges: Iterable[tuple[str, int, int, int, int, int]] = ()) -> bytes:
        """``gauges``: (model, version, running sequences, queued sequences, cached tokens,
        bytes counted against the memory budget)."""
        out: list[str] = []
        series = list(self._series.values())
        for name, attr, help_text in HISTOGRAMS:
            _family(out, name, "histogram", help_text)
            for s in series:
                out.extend(getattr(s, attr).lines(name, s.labels))
        _family(out, USAGE, "histogram", "Tokens per request, by token type.")
        for s in series:
            out.extend(s.tokens_in.lines(USAGE, f'{s.labels},gen_ai_token_type="input"'))
            out.extend(s.tokens_out.lines(USAGE, f'{s.labels},gen_ai_token_type="output"'))
        for name, attr, help_text in COUNTERS:
            _family(out, name, "counter", help_text)
            out.extend(f"{name}{{{s.labels}}} {getattr(s, attr)}" for s in series)
        rows = list(gauges)
        for index, name, kind, help_text in GAUGES:
            _family(out, name, kind, help_text)
            for row in rows:
                labels = _labels(gen_ai_request_model=row[0], version=str(row[1]))
                out.append(f"{name}{{{labels}}} {row[index]}")
        out.append("")
        return "\n".join(out).encode()


def _family(out: list[str], name: str, kind: str, help_text: str) -> None:
    out.append(f"# HELP {name} {help_text}")
    out.append(f"# TYPE {name} {kind}")


HISTOGRAMS = (  # (name, GenAISeries attribute, help)
    ("gen_ai_server_time_to_first_token_seconds", "ttft",
     "Time from request to the first generated token."),
    ("gen_ai_server_time_per_output_token_seconds", "tpot",
     "Time per output token after the first."),
    ("gen_ai_server_request_duration_seconds", "duration",
     "Time of a generation request in the server."),
)  # fmt: skip
USAGE = "gen_ai_client_token_usage"
COUNTERS = (  # (name, GenAISeries attribute, help)
    ("gen_ai_usage_input_tokens_total", "input_total", "Prompt tokens processed."),
    ("gen_ai_usage_output_tokens_total", "output_total", "Tokens generated."),
    ("modelport_generation_requests_total", "requests", "Finished generation requests."),
)
GAUGES = (  # (index in a gauges row, name, type, help)
    (2, "modelport_generation_running_sequences", "gauge", "Sequences being decoded."),
    (3, "modelport_generation_queued_sequences", "gauge", "Sequences waiting for a slot."),
    (4, "modelport_generation_prefix_cache_tokens_total", "counter",
     "Prompt tokens reused from the prefix cache."),
    (5, "modelport_generation_memory_bytes", "gauge", "Memory counted for an open model."),
)  # fmt: skip
