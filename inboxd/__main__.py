from inboxd.cli import main

main()
