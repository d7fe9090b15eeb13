"""Configuration: the settings file (`settings`), YAML read with line numbers (`yamlsrc`), and hot
reload of policy directories (`hot_reload`).
"""
