"""Local stand-ins for the notification providers: each checks a request the way the provider
documents it (signatures recomputed here, independently of the adapters' signing code) and
answers with the provider's own success and error bodies."""
