"""What gift_hf shares on the Hub: model cards of students (``model_card``) and distilled datasets
(``publish``)."""
