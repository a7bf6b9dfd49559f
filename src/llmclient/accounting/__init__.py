"""Money: prices with their provenance (`prices`), the ledger of every call (`ledger`) and budgets (`budgets`)."""
