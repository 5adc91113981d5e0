from wolfpacs.cli import main

main()
