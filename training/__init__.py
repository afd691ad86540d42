"""vidalign.training"""
