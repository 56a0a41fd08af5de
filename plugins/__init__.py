"""smg_plugins: the method plugins that ship with smg-sdk.

Each subpackage is loaded through the ``smg_sdk`` entry-point group, exactly as a third-party
plugin would be, and uses only smg-sdk's public API. Plugins never import each other.
"""
