"""The NBD protocol: sans-IO codec, client transport, URIs, embedded server."""
