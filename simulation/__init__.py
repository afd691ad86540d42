"""vidalign.simulation"""
