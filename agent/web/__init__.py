"""The read-only web page (``WebServer`` in ``agent.web.server``)."""
