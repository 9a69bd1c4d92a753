"""An isolated JupyterLab for browser tests (never for real use): no token, temp settings."""

import os

c = get_config()  # noqa: F821  (provided by jupyter when it reads this file)
c.ServerApp.ip = "127.0.0.1"
c.ServerApp.port_retries = 0
c.ServerApp.allow_root = True
c.ServerApp.open_browser = False
c.IdentityProvider.token = ""
c.ServerApp.password = ""
c.ServerApp.disable_check_xsrf = True
c.LabApp.expose_app_in_browser = True
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
c.LabApp.workspaces_dir = os.environ["LW_TEST_WORKSPACES"]
c.LabApp.user_settings_dir = os.environ["LW_TEST_SETTINGS"]
