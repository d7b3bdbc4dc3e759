"""Attacks on resource control, reproduced against a real ``guwah serve`` over real sockets."""
