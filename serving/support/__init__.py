"""The support service: /chat, /feedback."""
