"""Talking to a board: the serial protocol client, QEMU boots, flashing with pyOCD, and the
host simulator of on-device personalization (the reference of firmware/personalize.c).
"""
