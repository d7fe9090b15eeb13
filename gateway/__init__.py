"""kubegate.gateway"""
