"""Running telemed locally: a private PostgreSQL and Mosquitto (`python -m deploy`), used by make run and tests.

Modules: `stack` (composition), `postgres` / `mosquitto` (one server each), `pgconfig` / `mosquitto_files`
(pure config rendering), `pgadmin` (SQL administration), `children` / `accounts` / `ports` / `binaries`
(process, account, port and binary plumbing), `errors`.
"""
