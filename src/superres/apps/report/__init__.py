"""Tables, figures and the HTML report built from evaluation results."""
