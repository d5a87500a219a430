"""The token-vending function: everything but the HTTP routes, which live in app.py."""
