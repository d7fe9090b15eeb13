"""kubegate.webshell"""
