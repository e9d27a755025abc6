from minitron.cli import main

main()
