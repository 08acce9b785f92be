"""The response loop (CONTRACT §9): responders, channels, who is told when, the responder page and dispatch."""
