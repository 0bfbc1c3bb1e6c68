"""Stand-ins for the third parties a shop talks to, run beside the platform on a laptop and
in the dev overlay: the payment provider (``python -m simulators.payment_provider``) and the
mail server (``python -m simulators.mail_sink``). They are not mercato services (no chassis
app, no database server) and no service imports them: services reach them over the network,
exactly as they reach the real provider and SMTP server in production."""
