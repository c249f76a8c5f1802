from ota.cli import main

main()
