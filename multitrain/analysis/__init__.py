"""Reading a trained model: the class relations its projection layers learned."""
