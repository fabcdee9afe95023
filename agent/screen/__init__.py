"""Screen sharing on the subscriber's PC: capture, change detection, encoding, update pipeline.

Everything here is plain synchronous code: capture and encoding take milliseconds of CPU, so the
agent's asyncio adapter runs them in a worker thread (``asyncio.to_thread``) and only the bytes
from :func:`protocol.screen.encode_update` cross back to the event loop. Screen content is never
logged (第33条, secrecy of communications).
"""
