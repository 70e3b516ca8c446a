"""The ways people archive runs in bulk today, written as they are written in the wild.

They are deliberately naive: they are what bulkruns is measured against.
"""
