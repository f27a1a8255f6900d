import evaluate
from evaluate.utils import launch_gradio_widget

module = evaluate.load("aime")
launch_gradio_widget(module)
