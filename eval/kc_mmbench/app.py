import evaluate
from evaluate.utils import launch_gradio_widget

module = evaluate.load("kc_mmbench")
launch_gradio_widget(module)
