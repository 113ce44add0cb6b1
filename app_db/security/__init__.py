"""Account protection: password hashing and policy, tokens, login throttling, security events.

The domain modules (``users``, ``sessions``) call into it; nothing here knows customers.
"""
