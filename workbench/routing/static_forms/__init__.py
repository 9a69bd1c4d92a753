"""The static forms of the routed mechanisms (``workbench.routing.static_form.EXPORTS``), by family.

``EXPORTS`` imports every module here on its first lookup; each registers one ``StaticForm`` per
mechanism it covers, under the mechanism's ``ROUTERS`` name.
"""
