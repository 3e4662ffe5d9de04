from convertctl.cli import main

main()
