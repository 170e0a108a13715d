from modelport.entry import main

main()
