"""The web service: FastAPI app, WebSocket protocol, jobs and storage."""
