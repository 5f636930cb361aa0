"""Who may do what: users, roles and teams of the FAB auth manager, through its REST API (/auth/fab/v1)
as the resource's admin; never by SQL. `./cli.sh users|roles|teams` (cli/users.py).

Every change a command makes goes through `client.done` once it has happened: the one place a record of
it (the event log) hooks in.
"""
