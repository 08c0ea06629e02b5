"""Steps 3-4 and 7-8: the helpdesk's decisions: threads, tickets, rules, SLAs, surveys, duties."""
