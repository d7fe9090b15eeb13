"""kubegate.audit"""
