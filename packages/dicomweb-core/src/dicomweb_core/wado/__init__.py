"""WADO-RS retrieve, QIDO-RS search glue and DELETE over an object store and a catalog.

Pure of any web framework: handlers take an :class:`~.reply.Ask` and give a
:class:`~.reply.Reply`; the service app only translates.
"""
