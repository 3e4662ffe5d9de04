from convertctl.cli.app import main

main()
