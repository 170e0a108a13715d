"""The dashboard's pages, in navigation order: one import string per page module, each of
which defines ``PAGE`` (see ``modelport.ui``). Adding a page is one entry here."""

PAGES = (
    "modelport.ui.pages.models",
    "modelport.ui.pages.model",
    "modelport.ui.pages.version",
    "modelport.ui.pages.compare",
    "modelport.ui.pages.aliases",
    "modelport.ui.pages.serving",
    "modelport.ui.pages.rollouts",
    "modelport.ui.pages.fleet",
    "modelport.ui.pages.monitoring",
)
