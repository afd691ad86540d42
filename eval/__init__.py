"""vidalign.eval"""
