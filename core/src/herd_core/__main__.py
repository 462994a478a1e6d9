from herd_core.cli import main

main()
