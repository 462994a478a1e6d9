from herd_operator.cli import main

main()
