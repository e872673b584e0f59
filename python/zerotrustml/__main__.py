from zerotrustml.cli import main

main()
