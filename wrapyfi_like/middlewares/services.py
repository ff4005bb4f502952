"""Limits every request/reply transport applies, so one client can never hold a service up.

A server answers one request at a time; these numbers bound what may wait around it per client
connection, and how much text an error reply may carry. The ZeroMQ transport maps them onto
libzmq's high-water marks; the in-memory one applies them to its inboxes.
"""

MAX_ERROR_TEXT = 1000
"""Characters of an error reply's text kept when it is sent and when it is raised: enough for an
exception's message, never a megabyte a peer chose."""
QUEUED_REQUESTS = 16
"""Requests one client connection may have waiting at a server. Our clients send one request at
a time, so this only bounds a client that floods: beyond it the server stops taking that
client's requests (the flooder's own sends wait), and other clients are not affected."""
QUEUED_REPLIES = 128
"""Replies a server keeps for one client that has not read them yet (besides what the operating
system buffers); one more is dropped at once, counted and logged. Our clients have one request
out at a time; the room is for clients that send a batch of requests before reading, and for a
moment when the thread that writes replies to the network is late. It bounds what a client that
never reads costs: this many replies of the service's size."""
