from inboxd.cli.main import main

main()
