"""The Netvisor-style CLI: one command engine, two ways in.

- `kubefabric cli` (agent/commands/cli.py) runs it locally against any
  agent over gNMI (`GnmiBackend`), one-shot or interactive.
- `CliSshServer` (ssh.py) serves the same shell over SSH from inside the
  agent, reading the datastore and writing through `ds.propose` as the
  logged-in user (`DatastoreBackend`).

Modules, one job each: commands.py (the command table), parser.py (Netvisor
argument syntax, help, completion), render.py (tables and other output
formats), engine.py (runs a parsed command against a backend), backend.py
(the backend interface and the in-process backend), gnmi_backend.py (the
gNMI client backend), shell.py (interactive loop), ssh.py (SSH server).
"""
