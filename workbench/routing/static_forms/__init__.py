"""The static forms of the routed mechanisms (``workbench.routing.static_form.EXPORTS``), by family.

``EXPORTS`` imports every module here on its first lookup; each registers one ``StaticForm`` per
mechanism it covers, under the mechanism's ``ROUTERS`` name. What ``lab.export_router`` writes:

============  ==============================================  ==========================================
mechanism     static form (averaged over the prompts' tokens)  exact, without prompts, when
============  ==============================================  ==========================================
smora         (α/k)·B diag(Ḡ) A                                k = r = rank_partition, uniform bias
flylora       (α/r)·B diag(m̄) A                                k = r (the full (α/r)·B·A)
mora          scale·B diag(w̄) A over every task's ranks        one rank in the pool, delta = -inf
loramoe       Σ_e ω̄_e s B_e A_e                                experts = 1
lora-mixer    Σ_e ḡ_e s_e B_e A_e                              experts = 1
meteora       Σ_j w̄_j s_j B_j A_j (= routing.freeze)           a bank of one
mixlora       one FFN, projections Σ_e w̄_e s B^e A^e           experts = 1 (else first order in ΔW)
prompt-scale  diag(σ̄) B A                                      never by configuration; zero distance
                                                               when σ is one vector for every prompt
mask-routed   Σ_k f_k s_k B_k A_k, f_k the share of type k     one branch
tara          Σ_c m̄_c s_c B_c A_c                              its unmasked modules (q, o with kv_only)
reclora       Σ_mn E[w_m w_n] s B_m A_n (rank M·r)             M = 1 (or one context for every prompt)
alora         s·B (I + W_o D̄ W_v) A, D̄ the self-attention     W_o = 0 (the plain LoRA)
============  ==============================================  ==========================================

Not exportable: DMoERM (``routing.dmoerm``) is a reward model over several full forward passes, not
an update of the language model's weights, and is not a ``ROUTERS`` entry.
"""
