"""kubefabric's faces (gNMI, NETCONF, CLI, web, metrics) and its start-up (``kubefabric`` command, runtime).

asyncssh 2.24 still names DSA types at import time, and cryptography 47+
warns about DSA on each of those lines (a screen of
CryptographyDeprecationWarning in front of every ``kubefabric`` command).
kubefabric never offers or accepts DSA keys; the filter below silences
exactly that warning, from asyncssh's own modules, and nothing else.
"""
import warnings

warnings.filterwarnings("ignore", message=r"DSA is deprecated", category=UserWarning, module=r"asyncssh(\.|$)")
