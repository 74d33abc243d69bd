from funclet.cli import main

main()
