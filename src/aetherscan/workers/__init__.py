"""Scale-out: the workers that run queued jobs, and what they share with the server."""
