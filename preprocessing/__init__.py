"""vidalign.preprocessing"""
