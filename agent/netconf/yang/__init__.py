"""YANG modules of the NETCONF face itself (packaged as data: get-schema serves them)."""
