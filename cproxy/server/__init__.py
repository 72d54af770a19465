"""The gevent server: listener, client connection handler, forwarding, CONNECT tunnels."""
