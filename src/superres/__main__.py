from superres.apps.cli import main

main()
