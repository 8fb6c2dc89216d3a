from normbench.cli.commands import main

main()
