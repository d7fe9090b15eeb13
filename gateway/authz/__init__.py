"""Authorization: the Casbin policy files (`policy`), the authorizer that decides on them
(`authorizer`), time-bound access requests and grants (`access`), and the `kubegate policy test`
cases for authorization (`cases`).
"""
